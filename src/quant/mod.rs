pub mod qat;

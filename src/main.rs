//! The `quench` command line: a thin layer over the library.

fn main() {
    println!("quench {}", env!("CARGO_PKG_VERSION"));
}

//! Views of records for people: text tables for the terminal (and, later, PNG and HTML).
//! Every function here is a pure function of the records it is given.

pub mod explore;
pub mod table;

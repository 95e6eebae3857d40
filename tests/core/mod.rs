//! Core CLI tests (filled in next).

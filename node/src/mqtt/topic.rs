//! Topic names and topic filters: validation and matching.

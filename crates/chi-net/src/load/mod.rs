//! Load generator (see issue: `chi load`).

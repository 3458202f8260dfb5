//! adalbert-hw (under construction).

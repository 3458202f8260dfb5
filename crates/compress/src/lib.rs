//! adalbert-compress (under construction).

//! adalbert-train (under construction).

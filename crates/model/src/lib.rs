//! adalbert-model (under construction).

//! adalbert-tasks (under construction).

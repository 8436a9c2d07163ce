//! jobbot-sim

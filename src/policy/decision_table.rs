//! The decision table: role × purpose × provider × resource type × labels × consent × care
//! relationship × agreement dates and status, each case with its expected outcome.

//! Unit tests of the PostgreSQL store need a server: tests/postgres_nodes.rs starts one.

//! Thin libpod REST client.

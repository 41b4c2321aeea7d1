//! Test bed: private podman service, images, registry.

# The recommended plugin configuration: jobs get no host paths outside their allocation,
# no privileged containers, only podman's default capabilities, and unused images are
# removed. The e2e tests (tests/e2e/plugin/gates.rs) run with this block.
plugin "nomad-driver-podman" {
  config {
    volumes {
      enabled = false
    }
    allow_privileged = false
    allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill",
                  "mknod", "net_bind_service", "setfcap", "setgid", "setpcap", "setuid",
                  "sys_chroot"]
    gc {
      image       = true
      image_delay = "10m"
    }
  }
}

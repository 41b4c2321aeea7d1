# The recommended plugin configuration: jobs get no host paths outside their allocation,
# no privileged containers nor anything that weakens the container boundary as much, only
# podman's default capabilities, no host devices, no host network, and unused images are
# removed. The e2e tests (tests/e2e/plugin/gates.rs, tests/e2e/attacks.rs) run with this
# block; README "Locked-down configuration" lists what each gate stops.
plugin "nomad-driver-podman" {
  config {
    volumes {
      enabled = false
    }
    allow_privileged   = false
    allow_devices      = []
    allow_host_network = false
    allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill",
                  "mknod", "net_bind_service", "setfcap", "setgid", "setpcap", "setuid",
                  "sys_chroot"]
    gc {
      image       = true
      image_delay = "10m"
    }
  }
}

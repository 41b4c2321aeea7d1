# Nomad client agent configuration running jobs with `driver = "podman"` through this
# plugin. Copy the binary into plugin_dir (see docs/plugin.md). The e2e tests parse this
# file and run every plugin test with its `config` block (socket_path aimed at their own
# podman service).

data_dir   = "/opt/nomad/data"
plugin_dir = "/opt/nomad/data/plugins"

client {
  enabled = true
}

# The label is the binary's file name in plugin_dir; Nomad 1.8+ loads no plugin without it.
plugin "nomad-driver-podman" {
  config {
    # Rootful podman. Rootless: "unix:///run/user/<uid>/podman/podman.sock".
    socket_path = "unix:///run/podman/podman.sock"

    volumes {
      enabled = true
      # selinuxlabel = "z"
    }

    gc {
      container = true
    }

    recover_stopped = false

    extra_labels = ["job_name", "task_group_name", "task_name"]

    logging {
      driver = "nomad"
    }

    client_http_timeout = "60s"

    # Options the Go plugin does not have (their defaults keep its behaviour):
    allow_privileged = true
  }
}

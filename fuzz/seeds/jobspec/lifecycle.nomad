# Nomad's task lifecycle in one batch job: prestart, prestart sidecar, main (leader),
# poststart, poststop. Every task appends its name to a shared file in /alloc/data, so the
# order is visible in the output of the poststop task.
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

job "lifecycle" {
  type = "batch"

  group "order" {
    task "init" {
      driver = "podman"
      lifecycle {
        hook = "prestart"
      }
      config {
        image   = var.image
        command = "sh"
        args    = ["-c", "echo prestart >>$NOMAD_ALLOC_DIR/data/order; echo prestart done"]
      }
    }

    task "helper" {
      driver = "podman"
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }
      config {
        image   = var.image
        init    = true
        command = "sh"
        args    = ["-c", "echo sidecar >>$NOMAD_ALLOC_DIR/data/order; echo sidecar up; exec sleep infinity"]
      }
      kill_timeout = "2s"
    }

    task "main" {
      driver = "podman"
      leader = true
      config {
        image   = var.image
        command = "sh"
        args    = ["-c", "grep -q prestart $NOMAD_ALLOC_DIR/data/order || exit 3; echo main >>$NOMAD_ALLOC_DIR/data/order; sleep 2; echo main done"]
      }
    }

    task "announce" {
      driver = "podman"
      lifecycle {
        hook = "poststart"
      }
      config {
        image   = var.image
        command = "sh"
        args    = ["-c", "echo poststart >>$NOMAD_ALLOC_DIR/data/order; echo main is running"]
      }
    }

    task "cleanup" {
      driver = "podman"
      lifecycle {
        hook = "poststop"
      }
      config {
        image   = var.image
        command = "sh"
        args    = ["-c", "echo poststop >>$NOMAD_ALLOC_DIR/data/order; echo \"order: $(tr '\\n' ' ' <$NOMAD_ALLOC_DIR/data/order)\""]
      }
    }
  }
}

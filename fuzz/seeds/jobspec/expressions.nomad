variable "ports" {
  type    = list(number)
  default = [80, 443]
  validation {
    condition     = length(var.ports) > 0
    error_message = "at least one port"
  }
}

locals {
  names  = [for p in var.ports : "p${p}"]
  by_num = { for i, p in var.ports : p => i if p > 0 }
  joined = join(",", local.names)
  text   = <<-EOT
    %{ for n in local.names ~}
    ${upper(n)}
    %{ endfor ~}
  EOT
}

job "expr" {
  type = "batch"
  meta {
    list = local.joined
  }
  group "g" {
    count = length(var.ports) > 1 ? 2 : 1
    network {
      mode = "bridge"
      dynamic "port" {
        for_each = local.names
        content {
          to = 8080
        }
      }
      port "http" {
        static = 8080
        to     = 80
      }
    }
    restart {
      attempts = 1
      delay    = "1s"
      mode     = "fail"
    }
    task "t" {
      driver = "podman"
      env {
        NAMES = local.joined
        ALLOC = "${NOMAD_ALLOC_ID}"
        FMT   = format("%s-%d", "x", 3)
      }
      template {
        data        = "key={{ env \"NOMAD_TASK_NAME\" }}\n"
        destination = "secrets/file.env"
        env         = true
      }
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      resources {
        cpu    = 100
        memory = 64
      }
      config {
        image          = "localhost/ndp-busybox:latest"
        command        = "/bin/sh"
        args           = ["-c", try(local.text, "x"), jsonencode(local.by_num)]
        ports          = ["http"]
        memory_reservation = "32m"
        ulimit {
          nofile = "1024:2048"
        }
        auth {
          username = "u"
          password = base64decode("cGFzcw==")
        }
        volumes = ["${NOMAD_TASK_DIR}/data:/data:ro"]
      }
    }
  }
}

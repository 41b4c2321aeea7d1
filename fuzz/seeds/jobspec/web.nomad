# A service: busybox httpd on a dynamic host port, serving a page rendered from a
# template, with settings from env and a template read back as env. Runs until Ctrl-C.
#   nomad-driver-podman run examples/jobs/web.nomad
#   curl http://127.0.0.1:<port printed by the runner>/
#   nomad-driver-podman run --var count=2 examples/jobs/web.nomad   (two allocations)
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

variable "count" {
  type    = number
  default = 1
}

variable "title" {
  type    = string
  default = "Hello from the runner"
}

job "web" {
  type = "service"

  group "web" {
    count = var.count

    network {
      port "http" {
        to = 8080
      }
    }

    restart {
      attempts = 2
      delay    = "1s"
    }

    task "server" {
      driver = "podman"

      config {
        image   = var.image
        init    = true
        command = "httpd"
        args    = ["-f", "-v", "-p", "${NOMAD_PORT_http}", "-h", "/local/www"]
        ports   = ["http"]
      }

      env {
        TITLE = var.title
      }

      # The page, rendered with the task's environment before the task starts.
      template {
        destination = "local/www/index.html"
        data        = <<-EOT
          <h1>{{ env "TITLE" }}</h1>
          <p>alloc {{ env "NOMAD_ALLOC_ID" }} serves on port {{ env "NOMAD_PORT_http" }}</p>
        EOT
      }

      # Read back as environment variables (env = true); kept in the secrets dir.
      template {
        destination = "secrets/app.env"
        env         = true
        perms       = "0600"
        data        = <<-EOT
          OWNER=team-{{ env "NOMAD_JOB_NAME" | toUpper }}
        EOT
      }

      # Custom delimiters leave {{ }} alone for the application.
      template {
        destination     = "local/www/raw.txt"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = "task [[ env \"NOMAD_TASK_NAME\" ]] keeps {{ this }}\n"
      }

      kill_timeout = "3s"

      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}

# Pod pattern 1 (the Go plugin's nats_simple_pod): a server, and a poststart sidecar that
# joins the server's network namespace with network_mode = "task:server" and reaches it on
# localhost. Runs until Ctrl-C.
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

job "pod-task" {
  group "pod" {
    network {
      port "http" {
        to = 8080
      }
    }

    task "server" {
      driver = "podman"

      config {
        image   = var.image
        init    = true
        command = "sh"
        args    = ["-c", "mkdir -p /tmp/www && echo server-ok >/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
        ports   = ["http"]
      }

      kill_timeout = "3s"
    }

    task "probe" {
      driver = "podman"

      lifecycle {
        hook    = "poststart"
        sidecar = true
      }

      config {
        image        = var.image
        init         = true
        network_mode = "task:server"
        command      = "sh"
        args         = ["-c", "while true; do echo \"probe: $(wget -q -O - http://localhost:8080/ 2>&1)\"; sleep 2; done"]
      }

      kill_timeout = "3s"
    }
  }
}

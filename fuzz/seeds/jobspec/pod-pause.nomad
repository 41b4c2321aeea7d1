# Pod pattern 2 (the Go plugin's nats_pod): a prestart sidecar "pod" holds the network
# namespace and publishes the ports; the server and a probe join it with
# network_mode = "task:pod" and talk over localhost. Runs until Ctrl-C.
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

job "pod-pause" {
  group "pod" {
    network {
      port "http" {
        to = 8080
      }
    }

    task "pod" {
      driver = "podman"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image   = var.image
        init    = true
        command = "sleep"
        args    = ["infinity"]
        ports   = ["http"]
      }

      kill_timeout = "3s"
    }

    task "server" {
      driver = "podman"

      config {
        image        = var.image
        init         = true
        network_mode = "task:pod"
        command      = "sh"
        args         = ["-c", "mkdir -p /tmp/www && echo pause-ok >/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
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
        network_mode = "task:pod"
        command      = "sh"
        args         = ["-c", "while true; do echo \"probe: $(wget -q -O - http://localhost:8080/ 2>&1)\"; sleep 2; done"]
      }

      kill_timeout = "3s"
    }
  }
}

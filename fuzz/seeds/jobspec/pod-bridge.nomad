# Pod pattern 3 (the Go plugin's nats_group): group network mode "bridge" gives the
# allocation one network namespace that owns the group's ports; every task shares it and
# reaches the others on localhost. Runs until Ctrl-C.
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

job "pod-bridge" {
  group "pod" {
    network {
      mode = "bridge"
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
        args    = ["-c", "mkdir -p /tmp/www && echo bridge-ok >/tmp/www/index.html && exec httpd -f -p ${NOMAD_PORT_http} -h /tmp/www"]
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
        image   = var.image
        init    = true
        command = "sh"
        args    = ["-c", "while true; do echo \"probe: $(wget -q -O - http://localhost:${NOMAD_PORT_http}/ 2>&1)\"; sleep 2; done"]
      }

      kill_timeout = "3s"
    }
  }
}

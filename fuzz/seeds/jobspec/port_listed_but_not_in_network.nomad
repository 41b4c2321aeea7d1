job "web" {
  group "g" {
    network {
      port "http" {
        to = 8080
      }
    }
    task "t" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
        ports = ["http", "metrics"]
      }
    }
  }
}

job "web" {
  group "g" {
    task "ok" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
    task "bad" {
      driver = "podman"
      config {
        image       = "localhost/ndp-busybox:latest"
        extra_hosts = ["db:10.0.0.300"]
      }
    }
  }
}

job "web" {
  group "g" {
    task "t" {
      driver       = "podman"
      kill_timeout = "344444444444444444444s"
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
  }
}

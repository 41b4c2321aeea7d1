job "web" {
  group "g" {
    task "t" {
      driver       = "podman"
      kill_timeout = "soon"
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
  }
}

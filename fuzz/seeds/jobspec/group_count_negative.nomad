job "web" {
  group "g" {
    count = -1
    task "t" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
  }
}

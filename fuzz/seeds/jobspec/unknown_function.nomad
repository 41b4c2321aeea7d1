job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = uppercase("busybox")
      }
    }
  }
}

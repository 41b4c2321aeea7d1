job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = var.image
      }
    }
  }
}

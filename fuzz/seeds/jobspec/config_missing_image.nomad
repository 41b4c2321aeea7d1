job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        command = "/bin/sh"
      }
    }
  }
}

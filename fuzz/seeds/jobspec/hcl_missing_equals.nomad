job "web" {
  group "g" {
    task "t" {
      driver "podman"
    }
  }
}

job "web" {
  type = "daemon"
  group "g" {
    task "t" {
      driver = "podman"
      bogus  = 1
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
  }
}

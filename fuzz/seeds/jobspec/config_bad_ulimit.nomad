job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
        ulimit {
          nofile = "4096:1024"
        }
      }
    }
  }
}

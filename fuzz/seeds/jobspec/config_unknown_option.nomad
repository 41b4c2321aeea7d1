job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image      = "localhost/ndp-busybox:latest"
        privileged = true
        imagee     = "typo"
      }
    }
  }
}

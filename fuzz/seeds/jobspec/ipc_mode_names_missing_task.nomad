job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image    = "localhost/ndp-busybox:latest"
        ipc_mode = "task:ghost"
      }
    }
  }
}

job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image    = "localhost/ndp-busybox:latest"
        ipc_mode = "host"
        shm_size = "64m"
      }
    }
  }
}

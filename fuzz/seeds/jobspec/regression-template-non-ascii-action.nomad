job "j" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = "busybox"
      }
      template {
        data        = "{{ é }}"
        destination = "local/x"
      }
    }
  }
}

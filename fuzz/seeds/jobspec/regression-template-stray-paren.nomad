job "j" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = "busybox"
      }
      template {
        data        = <<-EOT
          {{ ) }}
        EOT
        destination = "local/x"
      }
    }
  }
}

variable "replicas" {
  type    = number
  default = "three"
}

job "web" {
  group "g" {
    count = var.replicas
    task "t" {
      driver = "podman"
      config {
        image = "localhost/ndp-busybox:latest"
      }
    }
  }
}

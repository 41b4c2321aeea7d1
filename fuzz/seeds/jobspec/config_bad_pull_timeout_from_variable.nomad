variable "pull_timeout" {
  type    = string
  default = "five minutes"
}

job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image              = "localhost/ndp-busybox:latest"
        image_pull_timeout = var.pull_timeout
      }
    }
  }
}

locals {
  images = ["localhost/ndp-busybox:latest"]
}

job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = local.images[3]
      }
    }
  }
}

"""`fdem deblur` out of the box against the blurry input."""

{
  "targets": [
    {
      "target_name": "chorus_blas",
      "sources": ["chorus_blas.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}

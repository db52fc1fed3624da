"""Image internals. Steps (Prefect tasks running the Pillow work in a thread; ``.fn`` is the
plain coroutine function): ``probe.probe``, ``imaging.thumbnail``, ``gif.animate``,
``strip.tile_images``, ``analysis.decode``, ``faces.find_faces``,
``saliency.find_salient_points``, ``smartcrop.find_crop_boxes``. Each wraps a plain
synchronous function of its module (``probe_image``, ``make_thumbnail``, ...)."""

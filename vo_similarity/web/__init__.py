"""The web page "You might also like these images" (docs/web.md).

Nothing here is imported by the package at run time: these files are installed
into DaCHS's resource directory by ``vo-similarity publish``
(:func:`vo_similarity.publish.resdir.install_resdir`) and run in DaCHS's own
Python (``page`` needs twisted and DaCHS's ``gavo``), or in the browser
(``assets/``).  :mod:`.queries` and :mod:`.guard` need only numpy and the
standard library, so the tests import them directly too.
"""

"""``singleshot export`` (:mod:`singleshot.deploy.command`): weights to a runtime file, and for int8 the accuracy
check that decides whether the file is written. The files themselves are written by :mod:`singleshot.export`, which
:mod:`singleshot.predict` also uses to export on the fly; the check runs them through :mod:`singleshot.evaluation`."""

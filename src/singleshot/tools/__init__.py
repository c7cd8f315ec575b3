"""Commands about data and default boxes, around the library: ``singleshot check-data``
(:mod:`singleshot.tools.data_report`) and ``singleshot priors`` (:mod:`singleshot.tools.prior_coverage`, with the
design search of :mod:`singleshot.tools.prior_search`)."""

"""What editors and on-call engineers see of the distribution: the status fold (``model``), the
view that shares it (``view``), its follower and HTTP server (``web``), and the HTML pages
(``pages`` the handlers, ``layout`` the shared words and page frame, ``article`` and ``timeline``
the pages, ``platform`` the timeline's reader of the loudspeaker platform) rendered from
``templates/``."""

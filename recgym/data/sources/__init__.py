"""Raw-source loaders, one module per raw format (see docs/data.md).

* ``retailrocket``: RetailRocket ``events.csv``
* ``yoochoose``: RecSys Challenge 2015 clicks + buys (``rc15`` sample and full ``yoochoose``)
* ``session_rec``: the session-rec ``yoochoose-100k`` TSV sample
* ``movielens``: ml-100k and ml-1m (``load_ml1m_items`` reads ``movies.dat`` alone)
* ``netflix``: Netflix Prize ``training_set/mv_*.txt`` or ``combined_data_*.txt``
* ``steam``: UCSD Steam reviews + games
* ``obd``: Open Bandit Dataset (``load_obd_frame`` gives the raw rows)
* ``synthetic``: the `recgym.sim` world

Use them through ``recgym.data.load`` / ``load_split``, which add downloads and caching.
"""

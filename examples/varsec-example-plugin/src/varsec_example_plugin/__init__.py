"""An example varsec plugin: the ``pop-visual`` recommender (``model.PopVisual``)."""

from veracity.data import BoolQItem, load_boolq


def test_boolq_dev(data_dir):
    items = load_boolq(data_dir)
    assert len(items) == 3270
    assert isinstance(items[0], BoolQItem)
    assert items[0].question == "does ethanol take more energy make that produces"
    assert items[0].title == "Ethanol fuel" and items[0].answer is False
    assert items[0].passage.startswith("All biomass goes through")
    assert [i.index for i in items[:3]] == [0, 1, 2]
    assert sum(i.answer for i in items) == 2033

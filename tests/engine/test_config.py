from dataclasses import dataclass

import pytest

from engine.config import check_types, from_dict


@dataclass(frozen=True)
class Opts:
    name: str
    count: int = 1
    scale: float = 1.0
    limit: int | None = None
    on: bool = False

    def __post_init__(self) -> None:
        check_types(self, "option")


def test_strict_configs():
    assert from_dict(Opts, {"name": "a", "scale": 2, "limit": None}, "option") == Opts("a", scale=2)
    with pytest.raises(ValueError, match="unknown option.*colour"):
        from_dict(Opts, {"name": "a", "colour": 1}, "option")
    with pytest.raises(ValueError, match="'count' must be int"):
        from_dict(Opts, {"name": "a", "count": True}, "option")
    with pytest.raises(ValueError, match="'on' must be bool"):
        from_dict(Opts, {"name": "a", "on": 1}, "option")
    with pytest.raises(ValueError, match="name"):
        from_dict(Opts, {}, "option")
    with pytest.raises(ValueError, match="map"):
        from_dict(Opts, ["name"], "option")

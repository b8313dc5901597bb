import numpy as np
import pytest

from egoframe.data.video import FrameFolderReader, VideoFrameReader, decode_sequential, find_frame_folder, time_to_frame
from egoframe.errors import InputError
from tests.data.conftest import decode_index, make_video


def test_seeking_reader_returns_exactly_the_wanted_frames(tmp_path):
    path = make_video(tmp_path / "v.mp4", 150, fps=25, gop=12)
    wanted = [0, 1, 2, 40, 41, 99, 100, 149, 13, 14, 148]
    with VideoFrameReader(path, reseek_gap=5) as reader:
        assert reader.info.fps == 25 and reader.info.num_frames == 150
        assert (reader.info.width, reader.info.height) == (64, 48)
        frames = reader.read(wanted)
        assert sorted(frames) == sorted(set(wanted))
        assert {i: decode_index(f) for i, f in frames.items()} == {i: i for i in wanted}
        # A second read on the same reader goes backwards in the file: still exact.
        assert decode_index(reader.read([3])[3]) == 3
    sequential = decode_sequential(path, wanted)
    for index in wanted:
        np.testing.assert_array_equal(frames[index], sequential[index])


def test_frames_past_the_end_are_left_out(tmp_path):
    path = make_video(tmp_path / "v.mp4", 30, fps=10)
    with VideoFrameReader(path) as reader:
        frames = reader.read([28, 29, 30, 31, 200])
    assert sorted(frames) == [28, 29]


def test_unreadable_and_missing_videos_raise_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 20)
    with pytest.raises(InputError, match="unreadable video"):
        VideoFrameReader(str(bad))
    with pytest.raises(InputError, match="video not found"):
        VideoFrameReader(str(tmp_path / "nope.mp4"))


def test_time_to_frame_rounds_halves_up_and_absorbs_float_error():
    assert time_to_frame(0.75, 10) == 8  # round() would give 8 here but 2 for 0.25 s
    assert time_to_frame(0.25, 10) == 3
    assert time_to_frame(0.7, 30) == 21
    assert time_to_frame(0.0, 50) == 0


def test_frame_folder_reader_is_one_based_on_disk(tmp_path):
    from PIL import Image

    from tests.data.conftest import frame_image

    folder = tmp_path / "rgb_frames" / "P01" / "P01_01"
    folder.mkdir(parents=True)
    for index in (0, 1, 2, 4):  # frame 3 (frame_0000000004.jpg) is missing
        Image.fromarray(frame_image(index)).save(folder / f"frame_{index + 1:010d}.jpg", quality=95)
    assert find_frame_folder(str(tmp_path / "rgb_frames"), "P01", "P01_01") == str(folder)
    with FrameFolderReader(str(folder), fps=50) as reader:
        assert reader.info.num_frames == 5
        frames = reader.read([0, 2, 3, 4])
    assert sorted(frames) == [0, 2, 4]
    assert decode_index(frames[2]) == 2

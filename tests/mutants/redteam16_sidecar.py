"""Round 16, the sidecar caption layout (2026-12-07; each caught): real images as a folder of
images with their caption files beside them (``0001.png`` + ``0001.txt``: kohya sd-scripts,
OneTrainer), ``ImageTextSource``'s layout "captions": read in the sorted order of the images'
relative paths, subfolders included, hidden ones skipped, .txt preferred over .text and .caption;
refused in one line when an image lacks its caption or a caption is not UTF-8; its fingerprint
covering names, sizes and caption bytes; written by ``--write-miniature --layout captions``."""

from run import Mutant

IMAGES = "tlcm/data/images.py"

S = "tests/test_sidecar_units.py"
T_ORDER = f"{S}::test_images_and_captions_are_read_in_sorted_order_with_subfolders"
T_UNLISTED = f"{S}::test_a_subfolder_that_cannot_be_listed_is_refused_not_skipped"
T_LINK = f"{S}::test_a_linked_subfolder_is_read_and_a_link_loop_once"
T_PREFER = f"{S}::test_txt_is_preferred_over_text_and_caption"
T_EMPTY = f"{S}::test_empty_captions_are_allowed_as_in_the_other_layouts"
T_PRECEDENCE = f"{S}::test_metadata_and_shards_take_precedence_over_sidecars"
T_ONE = f"{S}::test_an_image_without_its_caption_file_is_refused_by_name"
T_MANY = f"{S}::test_many_images_without_captions_are_counted_and_a_few_named"
T_UTF8 = f"{S}::test_a_caption_file_that_is_not_utf8_is_refused"
T_BARE = f"{S}::test_a_folder_of_images_without_any_caption_names_the_sidecar_layout"
T_FP = f"{S}::test_the_fingerprint_covers_names_sizes_and_caption_bytes"

MUTANTS = [
    Mutant(
        "sidecar-unsorted",
        IMAGES,
        "        return sorted(images), {key: file for key, (_, file) in captions.items()}",
        "        return images, {key: file for key, (_, file) in captions.items()}",
        (T_ORDER,),
        "walk order: the folder's own files before its subfolders', not the documented sorted paths",
    ),
    Mutant(
        "sidecar-no-subfolders",
        IMAGES,
        '            folders[:] = sorted(f for f in folders if not f.startswith("."))',
        "            folders[:] = []",
        (T_ORDER,),
        "kohya's 10_name/ concept folders are not read: their images silently left out",
    ),
    Mutant(
        "sidecar-unlisted-folder-skipped",
        IMAGES,
        "os.walk(folder, onerror=unlisted, followlinks=True)",
        "os.walk(folder, followlinks=True)",
        (T_UNLISTED,),
        "a subfolder it may not list is skipped: its images silently left out of the training data",
    ),
    Mutant(
        "sidecar-link-loop-walked",
        IMAGES,
        "            if real in seen:  # a link back up: walked already",
        "            if False:  # a link back up: walked already",
        (T_LINK,),
        "a symbolic link back up repeats the folder's images until the path is too long",
    ),
    Mutant(
        "sidecar-caption-preference-reversed",
        IMAGES,
        "                    if key not in captions or rank < captions[key][0]:",
        "                    if key not in captions or rank > captions[key][0]:",
        (T_PREFER,),
        "NAME.caption wins over NAME.txt: kohya's default extension is the last resort, not the first",
    ),
    Mutant(
        "sidecar-stem-first-dot",
        IMAGES,
        '                stem, dot, ext = name.rpartition(".")',
        '                stem, dot, ext = name.partition(".")',
        (T_ORDER,),
        "webdataset's key rule: e.v2.png is no image (extension v2.png), its sample lost",
    ),
    Mutant(
        "sidecar-missing-caption-unchecked",
        IMAGES,
        "        if missing:\n            first = missing[0]",
        "        if False:\n            first = missing[0]",
        (T_ONE, T_MANY),
        "an image without its caption raises a bare KeyError, not the one line naming it",
    ),
    Mutant(
        "sidecar-missing-all-named",
        IMAGES,
        '            shown = ", ".join(missing[:MISSING_SHOWN])',
        '            shown = ", ".join(missing)',
        (T_MANY,),
        "100k uncaptioned images: a message naming every one of them",
    ),
    Mutant(
        "sidecar-latin1-captions",
        IMAGES,
        '                texts.append(clean_prompt(path.read_bytes().decode("utf-8-sig")))',
        '                texts.append(clean_prompt(path.read_bytes().decode("latin-1")))',
        (T_UTF8, T_EMPTY),
        "a Windows-1252 caption is read as mojibake, and a byte order mark becomes part of the prompt",
    ),
    Mutant(
        "sidecar-captions-not-cleaned",
        IMAGES,
        '                texts.append(clean_prompt(path.read_bytes().decode("utf-8-sig")))',
        '                texts.append(path.read_bytes().decode("utf-8-sig"))',
        (T_ORDER, T_EMPTY),
        "a caption's trailing newline becomes part of the prompt (metadata and shard captions are stripped)",
    ),
    Mutant(
        "sidecar-fingerprint-without-caption-bytes",
        IMAGES,
        '                digest.update(f"{image}\\0{size}\\0{caption}\\0{len(data)}\\0".encode() + data)',
        '                digest.update(f"{image}\\0{size}\\0{caption}\\0{len(data)}\\0".encode())',
        (T_FP,),
        "a caption edited to another of the same length: a resume does not see that the data changed",
    ),
    Mutant(
        "sidecar-fingerprint-without-sizes",
        IMAGES,
        '                digest.update(f"{image}\\0{size}\\0{caption}\\0{len(data)}\\0".encode() + data)',
        '                digest.update(f"{image}\\0{caption}\\0{len(data)}\\0".encode() + data)',
        (T_FP,),
        "an image replaced under the same name: a resume does not see that the data changed",
    ),
    Mutant(
        "sidecar-shards-not-preferred",
        IMAGES,
        '        if not folder.is_dir() or (folder / METADATA).is_file() or any(folder.glob("*.tar")):',
        "        if not folder.is_dir() or (folder / METADATA).is_file():",
        (T_PRECEDENCE,),
        "a folder of shards with a stray captioned image is read as that one image",
    ),
    Mutant(
        "sidecar-any-image-is-the-layout",
        IMAGES,
        '        paired = any(image.rpartition(".")[0] in captions for image in images)',
        "        paired = bool(images)",
        (T_BARE,),
        "a folder of uncaptioned images (a nested metadata folder's) is blamed image by image",
    ),
    Mutant(
        "sidecar-hint-silent",
        IMAGES,
        '            "a folder of images with a caption file beside each (NAME.png + NAME.txt) "\n',
        "",
        (T_BARE,),
        "the refusal of a folder without a layout does not say that NAME.png + NAME.txt is one",
    ),
]
